"""Stage one: candidate generators (popularity, ALS, two-tower, rules) and their union."""
