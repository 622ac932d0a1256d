"""Dialogs, widgets and layer styles of the plugin (QGIS side)."""
