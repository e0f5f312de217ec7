"""Micro-expression recognition (MER) from facial flow: does better flow give better recognition?

The loop FacialFlowNet and SRFlow judge their flow by, as one command (``pyflowops mer``):

* :mod:`.datasets`: clips with onset, apex, offset and the composite benchmark's three classes
  (negative, positive, surprise), from ``pyflowops synth --mode micro`` or CASME II, SAMM, SMIC;
* :mod:`.flows`: onset -> apex flow from a method (classical baselines, DecFlow's expression flow,
  any checkpoint, the synthetic ground truth);
* :mod:`.representation`: the maps MER papers feed a recogniser (u, v, optical strain, face crop);
* :mod:`.network`: a small CNN on those maps; :mod:`.protocol`: leave-one-subject-out training
  and the UF1 / UAR metrics; :mod:`.plots`: confusion matrices and the maps as pictures;
* :mod:`.pipeline`: all of it for several flow methods on the same clips and splits, and the table.
"""
