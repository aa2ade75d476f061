import os
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))

# CMakeLists.txt builds both files, the library (the one the CMake package
# installs, same soname) and the Python module that links it; each extension
# here is the file CMake built.
BUILT_FILES = {"torch_ext.lib.libtorch_ext": "libtorch_ext.so", "torch_ext._C": "_C.so"}


class CMakeBuild(build_ext):
    """Builds the package's native files with CMakeLists.txt.

    The CMake build folder is $TORCH_EXT_CPP_BUILD when set (`make test` sets
    it to its own build, which this then only brings up to date), or else a
    folder of its own configured for the Python package alone.
    """

    def run(self):
        folder = os.path.abspath(os.environ.get("TORCH_EXT_CPP_BUILD") or os.path.join(self.build_temp, "cmake"))
        cache = os.path.join(folder, "CMakeCache.txt")
        if not os.path.isfile(cache):
            subprocess.check_call([
                "cmake", "-S", ROOT, "-B", folder,
                f"-DPython3_EXECUTABLE={sys.executable}",
                "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                "-DTORCH_EXT_BUILD_PYTHON=ON",
                "-DTORCH_EXT_BUILD_TESTS=OFF",
                "-DTORCH_EXT_BUILD_EXAMPLES=OFF",
                "-DTORCH_EXT_BUILD_BENCHMARKS=OFF",
                "-DTORCH_EXT_INSTALL=OFF",
            ])
        with open(cache) as lines:
            if "TORCH_EXT_BUILD_PYTHON:BOOL=ON\n" not in lines:
                raise SystemExit(
                    f"the CMake build {folder} does not build the Python module: "
                    "configure it with -DTORCH_EXT_BUILD_PYTHON=ON, as `make test` does"
                )
        jobs = self.parallel or (None if "CMAKE_BUILD_PARALLEL_LEVEL" in os.environ else os.cpu_count())
        subprocess.check_call(
            ["cmake", "--build", folder, "--target", "torch_ext_python"] + (["-j", str(jobs)] if jobs else [])
        )
        self.cmake_folder = folder
        super().run()

    def build_extension(self, ext):
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(self.cmake_folder, BUILT_FILES[ext.name]), target)

    def get_ext_filename(self, fullname):
        return os.path.join(*fullname.split(".")) + ".so"


# An editable install copies lib/libtorch_ext.so into the source tree, into a
# folder that git does not keep (it holds only ignored files).
os.makedirs(os.path.join(ROOT, "torch_ext", "lib"), exist_ok=True)

setup(
    name="torch_ext",
    version="0.1.0",
    description="wrap_future and on_complete on c10::ivalue::Future, for checkpointing",
    packages=find_packages(include=["torch_ext", "torch_ext.*"]),
    package_data={"torch_ext": ["py.typed"]},
    ext_modules=[Extension(name, sources=[]) for name in BUILT_FILES],
    cmdclass={"build_ext": CMakeBuild},
    entry_points={"console_scripts": ["torch_ext = torch_ext.cli:main"]},
    install_requires=["tqdm"],
    python_requires=">=3.10",
    zip_safe=False,
)
