"""
The OpenMSIStream contestant of `npm run bench -- reproduce` (bench/reproduce.ts).

A minimal subclass of OpenMSIStream's own MetadataJSONReproducer doing the same job as the sluice contestants:
for every file rebuilt from the chunk topic, produce {"file", "sha256", "bytes"} as JSON to the result topic
(upstream's key `<subdir>_<file>_chunk_processing_result`). Run the way upstream runs its programs:

    python bench/python/hash_metadata_reproducer.py --config FILE --consumer_topic_name IN \
        --producer_topic_name OUT --output_dir DIR [--n_consumer_threads 2 --n_producer_threads 2]

It runs until `q` is typed on stdin (or it is killed).

OpenMSIStream 1.8.8's `run_from_command_line` cannot start any reproducer as shipped: the argument mapping it
inherits passes the topic names both positionally and as keywords (`__init__() got multiple values for argument
'consumer_topic_name'`). `get_init_args_kwargs` below passes them once, positionally, the way upstream's own tests
construct reproducers; everything else is upstream's code path.
"""

import hashlib

from openmsistream import MetadataJSONReproducer


class HashMetadataReproducer(MetadataJSONReproducer):
    """Hash → JSON: the trivial reproducer of the benchmark."""

    def _get_metadata_dict_for_file(self, datafile):
        data = datafile.bytestring
        return {
            "file": datafile.relative_filepath.as_posix(),
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }

    @classmethod
    def get_init_args_kwargs(cls, parsed_args):
        # upstream's args end with (config, producer topic) and its kwargs repeat both topic names
        args, kwargs = super().get_init_args_kwargs(parsed_args)
        consumer_topic_name = kwargs.pop("consumer_topic_name")
        producer_topic_name = kwargs.pop("producer_topic_name")
        return [*args[:-1], consumer_topic_name, producer_topic_name], kwargs


def main(args=None):
    HashMetadataReproducer.run_from_command_line(args)


if __name__ == "__main__":
    main()
