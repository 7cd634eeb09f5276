"""`archsearch data add|list|remove`: datasets by name."""

from __future__ import annotations

import click


@click.group()
def data():
    """Datasets by name: the built-in ones, and image folders of your own.

    \b
    Examples:
      archsearch data add flowers ~/data/flowers --size 64
      archsearch data list
      archsearch train vgg11-flowers --preset quick
      archsearch data remove flowers
    """


@data.command("add")
@click.argument("name")
@click.argument("path", type=click.Path())
@click.option("--size", type=click.IntRange(8, 1024), required=True,
              help="Image side in pixels the networks see (shorter side resized, centre crop).")
@click.option("--stream/--no-stream", default=None,
              help="Decode from disk while training (ImageNet's augmentation) instead of keeping the decoded set in "
                   "memory. Default: stream when the decoded set would pass 8 GiB.")
@click.option("--nets", type=click.Choice(["cifar", "imagenet"]), default=None,
              help="Which networks its arch names mean: the paper's CIFAR ones (3x3 stem) or its ImageNet ones "
                   "(torchvision's ResNets, the ImageNet VGGs). Default: imagenet from 128 px up.")
@click.option("--replace", is_flag=True, help="Point an already registered name at this folder.")
def data_add(name, path, size, stream, nets, replace):
    """Register the image folder (or .tar of one) at PATH as NAME: train/<class>/ and
    val/<class>/ (or test/<class>/). Targets then use it: vgg16-NAME, slimming-resnet20-NAME.

    In memory (small sets): each image is resized and centre-cropped to SIZE once, then
    trained with pad-and-crop and flips on the device, as CIFAR. Streamed (large sets, or
    --stream): images are decoded by parallel workers while training, with a random resized
    crop to SIZE and a flip (test: resize to SIZE*256/224, centre crop); a streamed .tar must be
    uncompressed. An undecodable image is an error naming the file, never skipped.

    \b
    Examples:
      archsearch data add flowers ~/data/flowers --size 64
      archsearch data add birds ~/data/birds.tar --size 224 --stream
    """
    from ..data.folders import add, registry_path  # torch (archsearch.data): kept out of `archsearch --help`

    e = add(name, path, size, replace=replace, stream=stream, nets=nets)
    how = "streamed from disk" if e["stream"] else "in memory"
    click.echo(f"registered {e['name']}: {e['path']}, {len(e['classes'])} classes, {e['train_images']} train / "
               f"{e['test_images']} {e['test_split']} images, at {e['size']}x{e['size']}, {how}, {e['nets']} "
               f"networks (registry: {registry_path()})")


@data.command("list")
def data_list():
    """The built-in datasets and the registered folders."""
    # torch (archsearch.data): kept out of `archsearch --help`
    from ..data import DATASETS
    from ..data.folders import read_registry, registry_path

    for name, info in DATASETS.items():
        click.echo(f"{name:<12} built in   {info.title} ({info.num_classes} classes, {info.input_size}px)")
    for name, e in read_registry().items():
        click.echo(f"{name:<12} registered {e['path']} ({len(e['classes'])} classes, {e['train_images']} train / "
                   f"{e['test_images']} {e['test_split']}, {e['size']}px, {'streamed' if e['stream'] else 'in memory'}, "
                   f"{e['nets']} networks)")
    click.echo(f"(registry: {registry_path()})")


@data.command("remove")
@click.argument("name")
def data_remove(name):
    """Forget a registered folder (its files are left alone)."""
    from ..data.folders import remove  # torch (archsearch.data): kept out of `archsearch --help`

    e = remove(name)
    click.echo(f"removed {e['name']} (its files at {e['path']} are untouched)")
