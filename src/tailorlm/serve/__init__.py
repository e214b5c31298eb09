"""Using a tuned model: predictions for texts and files (and, later, an HTTP server)."""
