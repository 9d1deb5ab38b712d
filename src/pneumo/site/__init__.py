"""A site's own view of the model it runs: which model that is (name, checksum, parent), and the figures its
reviewed history gives (agreement, local accuracy, rates by week, drift). NumPy only, so the service shows
what ``pneumo site report`` prints without scikit-learn."""
