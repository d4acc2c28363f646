"""The core stage: admitted encoder inputs -> L2-normalised features.

``batcher.py`` packs concurrent requests' rows into batches for its worker threads;
``device.py`` knows the machine (device, precision, CPU features, usable cores);
``runtimes/`` holds the towers (eager PyTorch, ONNX Runtime, OpenVINO) and the start-up
measurement that picks the runtime, precision and layout served. It imports
:mod:`service.imaging` for its probe images and :mod:`service.registry`, nothing of the API.
"""
