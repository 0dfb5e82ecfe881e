"""The base revision as the baseline: the change and the code it replaces, each in a worker
process of its own, measured side by side in the same run, interleaved and paired."""
