"""Explanations of a model's score: Score-CAM, attention and gradient maps, beat windows, figures and checks."""
