// A plain driver for the fuzz targets, built by any compiler: feeds every file named
// on the command line (or found in a named directory, recursively, in sorted order)
// to LLVMFuzzerTestOneInput once. CTest runs it over golden/ and the regression
// inputs in tests/data/fuzz/, so the normal build replays them without libFuzzer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path path(argv[i]);
    if (std::filesystem::is_directory(path)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(path)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    } else if (std::filesystem::is_regular_file(path)) {
      files.push_back(path);
    } else {
      std::cerr << "replay: " << path.string() << ": no such file or directory\n";
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::cerr << "replay: no inputs\n";
    return 2;
  }
  for (const std::filesystem::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::cerr << "replay: " << file.string() << ": cannot read it\n";
      return 2;
    }
    std::ostringstream buffer;
    if (std::filesystem::file_size(file) > 0) buffer << in.rdbuf();
    const std::string bytes = buffer.str();
    try {
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    } catch (const std::exception& error) {
      std::cerr << "replay: " << file.string() << ": uncaught exception: " << error.what() << "\n";
      return 1;
    }
  }
  std::cout << "replay: " << files.size() << " inputs, no failure\n";
  return 0;
}
