"""The browser client: static pages, no build step.

This file only makes the folder a Python package, so the pages ship inside the
wheel as package data and the server finds them with importlib.resources
(`earshot.client`). The server serves the .html, .js and .css files here and
nothing else.
"""
