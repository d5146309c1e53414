"""The cloud half of a deployed DUET model: parameter generation over HTTP (``recbole-duet serve``).

Runs from an exported bundle with onnxruntime, FastAPI and uvicorn (``pip install "recbole-duet[serve]"``);
it never imports torch or RecBole, so a replica starts in about a second and holds little memory.
"""
