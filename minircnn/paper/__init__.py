"""The Fast R-CNN paper's tables and figures in toy form (minircnn reproduce).

The variants each row trains, the rows, the SVM baseline, the report, the misses figure."""
