"""Speed: benchmarks, the machine's speed unit, the cost model, the evaluation profile and step
times."""
