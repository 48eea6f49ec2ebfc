"""Training, dataset readers, KADIS-700k synthesis and evaluation for VTAMIQ.

Needs the ``train`` extra (``pip install "vtamiq-metric[train]"``). Importing :mod:`vtamiq_metric` never imports
this subpackage.
"""
