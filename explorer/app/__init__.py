"""What the tabs share (the application context, session workspaces, plots, progress, examples) and
the Gradio page under ui/. The only layer that may import gradio (in ui/)."""
