"""Train a feed-forward style network: `python train.py style=starry_night [experiment=quick] [key=value ...]`."""

import hydra
from omegaconf import DictConfig

from stylenet.training.trainer import train_or_exit


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train_or_exit(cfg)


if __name__ == "__main__":
    main()
