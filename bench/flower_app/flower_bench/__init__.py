"""dainode's reference FL job as a Flower 1.42 app (numpy model, FedAvg), for bench/fl_vs_flower.py."""
