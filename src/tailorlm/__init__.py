"""tailorlm: fine-tune pretrained language models on your own domain data and prove they got better there."""

__version__ = "0.1.0"
