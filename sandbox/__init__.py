"""A local emulator of the Telegram Bot API with a user-side test API and a web chat page.

emulator = Emulator(default_token="123:abc", callback_answer_timeout=15)
emulator = Emulator(state_file=Path("telegram.json"))  # users and update ids survive a restart
emulator.install(app)          # onto an existing aiohttp application
app = create_app(emulator)     # or an application serving only the sandbox
"""

from sandbox.app import EMULATOR, Emulator, create_app
from sandbox.state import DEFAULT_TOKEN

__all__ = ["DEFAULT_TOKEN", "EMULATOR", "Emulator", "create_app"]
