"""Network-level evaluation: ResNet-18 on real data, int8 feature maps at every DRAM boundary.

Needs the optional ``torch`` dependency (CPU build); nothing else in fmcodec imports this package.
"""
