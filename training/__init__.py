"""FLOAT training: phase 2 (flow-matching transformer) and export; phase 1 follows."""
