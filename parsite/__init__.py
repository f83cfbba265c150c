"""The Django project that serves both roles of Packets at Rest."""
