#!/usr/bin/env python
"""Thin wrapper around ``segapp-predict`` (same options): ``python scripts/predict.py --help``."""

from segapp.cli.predict import main

if __name__ == "__main__":
    main()
