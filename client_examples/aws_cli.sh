#!/usr/bin/env bash
# Lookout for Vision basics with the AWS CLI: upload, manifest, project, dataset, train, host, detect, stop.
#
# Client: AWS CLI v1 (tested with aws-cli/1.45.11 on botocore 1.43.11). CLI releases after AWS retired
# the service no longer ship its API model; add it in one of these ways:
#   - pip install botocore-a-la-carte-lookoutvision   into the Python environment the CLI runs in
#     (it puts the model into that botocore's data folder);
#   - export AWS_DATA_PATH=<folder holding lookoutvision/2020-11-20/service-2.json>, for example the
#     botocore/data folder of an environment where that package is installed;
#   - aws configure add-model --service-name lookoutvision --service-model file://<that service-2.json>
#     (also the way for AWS CLI v2, which bundles its own botocore).
# When the CLI has no model of its own, the script uses the one in this repository's .venv (where the
# README's install command puts botocore-a-la-carte-lookoutvision), and only that service's model.
#
# Usage, with `lookout-emulator serve` running:
#   client_examples/aws_cli.sh [DATA] [PROJECT] [BUCKET]
# DATA is a folder in the getting-started cookies layout (dataset-files/training-images/normal-*.jpg and
# anomaly-*.jpg, test-images/); default ../shared/datasets/cookies next to this repository. It trains a
# single-dataset project (the service sets a test split aside itself) and detects anomalies in test-images/.
# Environment: AWS_ENDPOINT_URL (default http://127.0.0.1:5010), POLL_SECONDS (default 2).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
DATA=${1:-$here/../../shared/datasets/cookies}
PROJECT=${2:-cli-$(date +%Y%m%d-%H%M%S)}
BUCKET=${3:-lookout-cli}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:5010}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
if [[ -z ${AWS_ACCESS_KEY_ID:-} && -z ${AWS_PROFILE:-} ]]; then
    # An emulator without a credentials file accepts any credentials; the CLI needs some to sign
    # requests (one started with --credentials-file wants one of its keys, configured as usual).
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
fi
POLL_SECONDS=${POLL_SECONDS:-2}

# The lookoutvision model of the repository's own environment, alone in a folder for AWS_DATA_PATH
# (a whole botocore data folder would replace the CLI's models of every other service too).
models=$(mktemp -d)
trap 'rm -rf "$models"' EXIT
if ! aws lookoutvision help >/dev/null 2>&1; then
    for found in "$here"/../.venv/lib/python3*/site-packages/botocore/data/lookoutvision; do
        if [[ -d $found ]]; then
            ln -s "$(cd "$found" && pwd)" "$models/lookoutvision"
            export AWS_DATA_PATH=$models${AWS_DATA_PATH:+:$AWS_DATA_PATH}
            echo "Using the lookoutvision service model in $(cd "$found" && pwd)"
            break
        fi
    done
fi

if ! problem=$(aws lookoutvision list-projects --max-results 1 --output text 2>&1 >/dev/null); then
    if [[ $problem == *"Invalid choice"* ]]; then
        echo "this AWS CLI has no lookoutvision model: see the header of $0 for how to add it" >&2
    else
        echo "$problem" >&2
    fi
    exit 1
fi

# wait_for WHAT GOAL COMMAND...: run COMMAND (which prints a status) until it prints GOAL.
wait_for() {
    local what=$1 goal=$2 status last="" start=$SECONDS
    shift 2
    while true; do
        status=$("$@")
        if [[ $status != "$last" ]]; then
            echo "  $what: $status ($((SECONDS - start)) s)"
            last=$status
        fi
        case $status in
            "$goal") return 0 ;;
            *_IN_PROGRESS | TRAINING | STARTING_HOSTING | STOPPING_HOSTING | SYSTEM_UPDATING) sleep "$POLL_SECONDS" ;;
            *) echo "$what ended in $status" >&2; return 1 ;;
        esac
    done
}
dataset_status() { aws lookoutvision describe-dataset --project-name "$PROJECT" --dataset-type train \
                       --query DatasetDescription.Status --output text; }
model_status() { aws lookoutvision describe-model --project-name "$PROJECT" --model-version "$1" \
                     --query ModelDescription.Status --output text; }

echo "Uploading the training images to s3://$BUCKET/$PROJECT/"
aws s3 mb "s3://$BUCKET" >/dev/null 2>&1 || true  # fails harmlessly when the bucket exists
aws s3 cp --recursive --no-progress "$DATA/dataset-files/training-images" "s3://$BUCKET/$PROJECT/training-images/"

echo "Writing a Ground Truth manifest (the label is in each file name: normal-*.jpg, anomaly-*.jpg)"
manifest=$(mktemp)
trap 'rm -f "$manifest"; rm -rf "$models"' EXIT
for image in "$DATA"/dataset-files/training-images/*; do
    name=$(basename "$image")
    label=${name%%-*}
    printf '{"source-ref":"s3://%s/%s/training-images/%s","anomaly-label":%d,"anomaly-label-metadata":{"class-name":"%s","human-annotated":"yes","type":"groundtruth/image-classification","job-name":"labeling-job/cli"}}\n' \
        "$BUCKET" "$PROJECT" "$name" "$([[ $label == anomaly ]] && echo 1 || echo 0)" "$label" >>"$manifest"
done
aws s3 cp --no-progress "$manifest" "s3://$BUCKET/$PROJECT/manifests/train.manifest"

echo "Creating project $PROJECT and its dataset"
aws lookoutvision create-project --project-name "$PROJECT" --query ProjectMetadata.ProjectArn --output text
aws lookoutvision create-dataset --project-name "$PROJECT" --dataset-type train \
    --dataset-source "{\"GroundTruthManifest\":{\"S3Object\":{\"Bucket\":\"$BUCKET\",\"Key\":\"$PROJECT/manifests/train.manifest\"}}}" \
    --query DatasetMetadata.Status --output text >/dev/null
wait_for "train dataset" CREATE_COMPLETE dataset_status
aws lookoutvision describe-dataset --project-name "$PROJECT" --dataset-type train \
    --query 'DatasetDescription.ImageStats' --output table

echo "Training"
version=$(aws lookoutvision create-model --project-name "$PROJECT" \
    --output-config "{\"S3Location\":{\"Bucket\":\"$BUCKET\",\"Prefix\":\"$PROJECT/models/\"}}" \
    --query ModelMetadata.ModelVersion --output text)
wait_for "model $version" TRAINED model_status "$version"
aws lookoutvision describe-model --project-name "$PROJECT" --model-version "$version" \
    --query 'ModelDescription.Performance' --output table

echo "Hosting model $version"
aws lookoutvision start-model --project-name "$PROJECT" --model-version "$version" --min-inference-units 1 \
    --output text >/dev/null
wait_for "model $version" HOSTED model_status "$version"

# Body is a streaming blob: the CLI takes a plain file path for it (not fileb://).
echo "Detecting anomalies in $DATA/test-images/"
for image in "$DATA"/test-images/*; do
    case ${image,,} in *.png) type=image/png ;; *) type=image/jpeg ;; esac
    printf '  %-28s ' "$(basename "$image")"
    aws lookoutvision detect-anomalies --project-name "$PROJECT" --model-version "$version" \
        --content-type "$type" --body "$image" \
        --query 'DetectAnomalyResult.[IsAnomalous, Confidence]' --output text
done

echo "Stopping model $version"
aws lookoutvision stop-model --project-name "$PROJECT" --model-version "$version" --output text >/dev/null
wait_for "model $version" TRAINED model_status "$version"
echo "Done: project $PROJECT, model $version"
