"""fedami's shared core: data, models, training and evaluation, with no Flower inside."""
