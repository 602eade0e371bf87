"""The HTTP app the deployment files run (``uvicorn http_app:app``); replace with yours.

It serves the example ``Assistant`` component. Every replica must share the API key
(32 bytes or more), so it comes from ``MOTION_API_KEY``. Tokens are signed with a
secret of their own: ``MOTION_JWT_SECRET`` when set, else one kept in Redis.
"""

import os

from shopping_assistant import Assistant

from motion import Application

app = Application([Assistant], api_key=os.environ["MOTION_API_KEY"]).get_app()
