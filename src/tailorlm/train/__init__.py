"""Training: transformers' Trainer configured from the recipe, with tailorlm's callbacks."""
