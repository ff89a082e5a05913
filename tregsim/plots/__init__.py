"""Figures. Plotting never computes; it draws arrays computed elsewhere (backend Agg)."""

import matplotlib

matplotlib.use("Agg")
