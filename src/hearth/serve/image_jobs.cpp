#include "hearth/serve/image_jobs.hpp"

#include <exception>
#include <utility>

#include "hearth/core/error.hpp"
#include "hearth/image/png.hpp"

namespace hearth::serve {
namespace {

// Thrown from the progress callback to stop the pipeline between steps.
struct Stopped {
  bool timed_out = false;
};

double seconds_between(ImageJob::Clock::time_point a, ImageJob::Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

void ImageJob::finish(bool ok, ApiError error) {
  {
    std::lock_guard lock(mutex_);
    ok_ = ok;
    error_ = std::move(error);
    done_ = true;
  }
  cv_.notify_all();
}

bool ImageJob::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return done_; });
}

ImageQueue::ImageQueue(const models::FluxPipeline& pipeline, models::FluxRunOptions run,
                       std::size_t queue)
    : pipeline_(pipeline), run_(std::move(run)), queue_limit_(queue) {
  worker_ = std::thread([this] { work(); });
}

ImageQueue::~ImageQueue() {
  drain();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

std::shared_ptr<ImageJob> ImageQueue::submit(models::FluxRequest request, std::string model,
                                             ImageJob::Clock::time_point deadline) {
  auto job = std::make_shared<ImageJob>(std::move(request), std::move(model), deadline);
  {
    std::lock_guard lock(mutex_);
    if (draining_ || (running_ ? 1 : 0) + queue_.size() >= 1 + queue_limit_) return nullptr;
    queue_.push_back(job);
  }
  cv_.notify_all();
  return job;
}

void ImageQueue::drain() {
  std::unique_lock lock(mutex_);
  draining_ = true;
  idle_cv_.wait(lock, [&] { return queue_.empty() && !running_; });
}

ImageQueue::Counts ImageQueue::counts() const {
  std::lock_guard lock(mutex_);
  Counts c = counts_;
  c.running = running_ ? 1 : 0;
  c.queued = queue_.size();
  return c;
}

void ImageQueue::work() {
  for (;;) {
    std::shared_ptr<ImageJob> job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
      running_ = true;
    }
    ApiError error;
    const bool ok = run(*job, &error);
    {
      // Counted before the job is answered, so /health agrees with what its client got.
      std::lock_guard lock(mutex_);
      running_ = false;
      if (ok) {
        counts_.completed += job->b64_png_.size();
      } else if (error.code == "cancelled" || error.code == "timeout") {
        ++counts_.cancelled;
      } else {
        ++counts_.failed;
      }
    }
    job->finish(ok, std::move(error));
    idle_cv_.notify_all();
  }
}

bool ImageQueue::run(ImageJob& job, ApiError* error) {
  const auto started = ImageJob::Clock::now();
  const auto stop_check = [&] {
    if (job.cancelled()) throw Stopped{};
    if (ImageJob::Clock::now() > job.deadline_) throw Stopped{true};
  };
  try {
    stop_check();
    const models::FluxResult r =
        pipeline_.generate(job.request_, run_, [&](const models::FluxProgress&) { stop_check(); });
    // flux-cli's text chunks (models::flux_metadata), this server named as their software.
    models::FluxImageMetadata meta = models::flux_metadata(r, job.request_.prompt, job.model_);
    std::vector<std::string> pngs;
    for (std::size_t k = 0; k < r.images.size(); ++k) {
      meta.seed = r.seeds.empty() ? std::nullopt : std::optional(r.seeds[k]);
      image::PngText text = models::to_png_text(meta);
      for (auto& [key, value] : text) {
        if (key == "Software") value = "hearth hearth-server " HEARTH_VERSION;
      }
      const std::vector<std::byte> png = image::encode_png(r.images[k], text);
      pngs.push_back(
          base64_encode(std::string_view(reinterpret_cast<const char*>(png.data()), png.size())));
    }
    const auto ended = ImageJob::Clock::now();
    job.b64_png_ = std::move(pngs);
    job.seeds_ = r.seeds;
    job.timings_ = {seconds_between(job.submitted_, started), seconds_between(started, ended)};
    return true;
  } catch (const Stopped& s) {
    *error = s.timed_out
                 ? ApiError{504, "the image took longer than the server's timeout", "server_error",
                            "", "timeout"}
                 : ApiError{499, "the request was cancelled", "server_error", "", "cancelled"};
  } catch (const Error& e) {
    *error = e.code() == ErrorCode::kCancelled
                 ? ApiError{503, "the server was interrupted", "server_error", "", "cancelled"}
                 : internal_error(std::string("image generation failed: ") + e.what());
  } catch (const std::exception& e) {
    *error = internal_error(std::string("image generation failed: ") + e.what());
  }
  return false;
}

}  // namespace hearth::serve
