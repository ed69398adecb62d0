"""The studies, in report order. Each is one module with the interface described in
seqlab/studies/study.py; a new study is a module here, one line below, and its config
experiments/<NAME>.py. The launcher and the report find studies only through STUDIES.
"""
from seqlab.studies import (generation, grad_flow, impulse, length_gen, long_range, paper,
                            recall_capacity, text, throughput)

STUDIES = {s.NAME: s for s in (
    grad_flow,
    impulse,
    long_range,
    throughput,
    text,
    generation,
    length_gen,
    recall_capacity,
    paper,
)}
