"""The Open Inference Protocol (KServe "v2"): tensors in, tensors out, beside v1.

Protocol-neutral parts (tensors, one infer call, model metadata) live here; the REST codec
and routes and the gRPC service only translate their wire format into these.
"""
