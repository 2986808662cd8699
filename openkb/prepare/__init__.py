"""Prepare: turn one input file into a staged, converted, analysed document.

Runs in worker processes (or in-process with ``--jobs 1``); never takes the
KB lock and never writes outside its own staging dir.
"""
