"""The networks and their files: the kind registry and every kind (registry, kinds/), the loss network and the
perceptual losses (loss_network, losses), model files read and written (modelfile, formats, export) and the
ready-made models (zoo). Imports only stylenet.core."""
