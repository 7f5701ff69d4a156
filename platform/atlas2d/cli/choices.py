"""Choices several commands share (Typer enums)."""

from __future__ import annotations

from enum import Enum


class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
