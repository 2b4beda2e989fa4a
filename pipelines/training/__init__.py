"""Training and evaluation of the two models on synthetic phantoms (the only labelled data we can have here)."""
