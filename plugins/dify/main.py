from dify_plugin import DifyPluginEnv, Plugin

# Dify ends a call after MAX_REQUEST_TIMEOUT s (300 by default); the model's calls end before
# that (TOTAL_TIMEOUT in models/text_embedding/text_embedding.py), so Dify shows our error.
plugin = Plugin(DifyPluginEnv())

if __name__ == "__main__":
    plugin.run()
