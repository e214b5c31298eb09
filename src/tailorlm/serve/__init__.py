"""Using a tuned model: predictions for inputs and files (``predict``), an HTTP server (``server``), and the model
card written next to the weights (``card``)."""
