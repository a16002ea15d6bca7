"""Evaluation: the paper's metrics (SSIM, CIE-94) and tables."""
