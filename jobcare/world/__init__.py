"""The world simulator: a generative model of a public employment service with known ground truth."""
