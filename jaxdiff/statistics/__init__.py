"""Every statistic of the project: pooling members' shares and contrasts, intervals, equivalence tests.

Pure numpy, scipy and statsmodels; it imports nothing else of jaxdiff, so any layer above may use
it and a statistic has this one home.
"""
