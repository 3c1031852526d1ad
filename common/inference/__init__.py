"""Using a trained model: new ECGs scored with a checkpoint, prepared exactly as its model card says."""
