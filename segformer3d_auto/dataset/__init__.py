"""Raw datasets: dataset.json and labels/regions, image I/O, integrity check, MSD conversion, synthetic data."""
