"""Running a model: StyleModel and load_model (inference) with its tiles (tiling) and backends (backends), folders
on one machine or Ray (batch, cluster), videos and the webcam (video, temporal, timestamps, webcam), the web page
(serve), the web export (webexport), Gatys optimization (optimize); options shared by the commands (options).
Imports stylenet.core and stylenet.models only."""
