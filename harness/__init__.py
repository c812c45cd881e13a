"""Automated grading of the Hugging Face, Gradio and fine-tuning lab."""

__version__ = "0.1.0"
