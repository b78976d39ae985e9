"""The pipeline's stage logic as plain functions; the Faust agents in agents/ only wire them."""
