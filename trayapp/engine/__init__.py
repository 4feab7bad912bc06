"""The asyncio forwarding engine. No Qt here."""
