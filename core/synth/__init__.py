"""Synthetic top-down table scenes with ground truth in centimetres, for training and testing."""

from core.synth.render import render_scene
from core.synth.scene import CLASSES, Scene, sample_scene

__all__ = ["CLASSES", "Scene", "render_scene", "sample_scene"]
