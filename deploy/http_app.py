"""The HTTP app the deployment files run (``uvicorn http_app:app``); replace with yours.

It serves the example ``Assistant`` component. Every replica must share the API key
(it also signs the per-instance tokens), so it comes from ``MOTION_API_KEY``.
"""

import os

from shopping_assistant import Assistant

from motion import Application

app = Application([Assistant], api_key=os.environ["MOTION_API_KEY"]).get_app()
