"""results.json, report.md and the plots of a run; `medgate report` merges shards."""
