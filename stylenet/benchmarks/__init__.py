"""Speed and memory: `stylenet bench` (bench) and the exported web page in a browser (webbench). The top side:
it times training steps, inference, optimization, videos and folders, so it imports every side below it."""
