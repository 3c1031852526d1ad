"""fedami's Flower-free core, in sub-packages that follow the data:
config -> data -> synthetic -> models -> training -> evaluation -> federation -> experiments."""
