from dify_plugin import DifyPluginEnv, Plugin

# Dify cancels a model call after MAX_REQUEST_TIMEOUT s; our provider's total_timeout stays
# below it (see provider/_settings.py), so a slow endpoint answers with an error Dify shows.
plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=300))

if __name__ == "__main__":
    plugin.run()
