"""ser: speech emotion recognition from cached pre-trained speech representations."""

__version__ = "0.1.0"
