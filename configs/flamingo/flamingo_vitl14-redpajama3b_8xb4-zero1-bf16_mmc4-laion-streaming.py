# Web-scale training: the ZeRO-1 recipe (8 GPUs, DeepSpeed ZeRO-1, bf16) on
# MMC4 documents and LAION pairs streamed from WebDataset shards with the
# webdataset library. Nothing is indexed at start-up; each process and
# dataloader worker reads its own shards, shuffled each epoch and through a
# sample shuffle buffer; a resumed run continues its streams where the
# checkpoint left them (see the README's training section).
#   bash tools/dist_train.sh CONFIG 8
# The shards are brace patterns of local paths, or of URLs that webdataset
# opens: 'pipe:aws s3 cp s3://BUCKET/mmc4/{00000..23098}.tar -',
# 'pipe:gsutil cat gs://BUCKET/laion/{00000..99999}.tar',
# 'https://HOST/laion/{00000..99999}.tar'. MMC4 shards hold KEY.json
# documents with their images as image_base64 (OpenFlamingo's) or as KEY.I.jpg
# members; LAION shards are img2dataset's KEY.jpg + KEY.txt. Pack jsonl data
# with tools/dataset_converters/jsonl_to_webdataset.py.
_base_ = ['./flamingo_vitl14-redpajama3b_8xb4-zero1-bf16_mmc4-laion-video.py']
# images only: no temporal embeddings (OpenFlamingo v2 has none)
model = dict(neck=dict(max_num_frames=None))
mmc4_shards = 'data/mmc4/shards/{00000..23098}.tar'
laion_shards = 'data/laion/shards/{00000..99999}.tar'
train_dataloader = dict(
    _delete_=True,
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    datasets=dict(
        mmc4=dict(
            loss_weight=1.0,
            dataset=dict(
                type='StreamingWebDatasetInterleaved',
                shards=mmc4_shards,
                tokenizer={{_base_.tokenizer}},
                max_tokens=256,
                max_num_images=5,
                sim_threshold=0.24,
                shuffle_buffer=1000,
                # epoch-less: each worker draws shards with replacement
                resampled=True,
                pipeline={{_base_.image_pipeline}})),
        laion=dict(
            loss_weight=0.2,
            batch_size=8,
            dataset=dict(
                type='StreamingWebDatasetImageText',
                shards=laion_shards,
                tokenizer={{_base_.tokenizer}},
                max_tokens=32,
                shuffle_buffer=1000,
                resampled=True,
                pipeline={{_base_.image_pipeline}})),
    ))
